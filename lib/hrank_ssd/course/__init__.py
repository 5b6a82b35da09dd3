"""The course: profiles, steps, notebooks, the report and the video demo."""
