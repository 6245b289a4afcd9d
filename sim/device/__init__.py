"""A simulated device: one unchanged firmware app and its simulated HAL (flash, clock,
random source, display, keys), personalised, in process or on a pseudo-terminal."""
