"""MicroPython runtimes for the firmware: the real MicroPython 1.27 VM (WebAssembly under
Node) and the native unix port with a fixed heap, and the files that run inside them."""
