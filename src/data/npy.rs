//! `.npy` files in and out (float32 or float64), with atomic writes.
