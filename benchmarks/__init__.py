"""Side-by-side measurements (ratios in one run, medians), never timed asserts."""
