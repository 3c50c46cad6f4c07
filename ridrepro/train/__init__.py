"""Training: the loop, its measurements at PID epochs, run folders, cells and grids."""
