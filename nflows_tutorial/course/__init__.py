"""What makes the package a course: source listings, the checker, exercises, slides and the website."""
