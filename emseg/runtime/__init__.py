"""Where and how torch runs: device choice and autocast, the glibc allocator settings, what the machine is.

* [`device`][emseg.runtime.device]: CUDA or CPU, and mixed precision;
* [`allocator`][emseg.runtime.allocator]: glibc settings that keep freed tensor memory mapped;
* [`machine`][emseg.runtime.machine]: the CPU, cores, GPU and versions a timing was measured on.
"""
