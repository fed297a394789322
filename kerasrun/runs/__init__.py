"""Many run folders: find one, list, compare and plot them, in one table and number format. Never imports TensorFlow."""
