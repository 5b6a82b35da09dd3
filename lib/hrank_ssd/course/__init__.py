"""The course: profiles, steps, notebooks, the report, the video demo and the Colab rehearsal."""
