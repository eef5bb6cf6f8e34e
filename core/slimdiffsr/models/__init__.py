"""Networks: the student (what users run), the teacher, and their building blocks."""
