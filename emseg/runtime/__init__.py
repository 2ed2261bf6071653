"""Where and how torch runs: device choice and autocast, the glibc allocator settings, what the machine is."""
