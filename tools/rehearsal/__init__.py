"""The rehearsal of Colab's full-profile path, offline (``tools/rehearse.py``; docs/rehearsal.md): the stand-in
outside world on 127.0.0.1 (``standin``), the files it serves (``world``), the scenarios (``scenarios``), what the
user must see (``checks``), the kernel's Python (``env``) and the run itself (``run``). Not part of the library:
nothing in lib/ imports it."""
