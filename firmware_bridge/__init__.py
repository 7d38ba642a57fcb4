"""Host side of the serial weight-update protocol, its encodings, a device emulator and the C
receiver (c/). See issue 5 and ../shared/DESIGN.md; nothing here yet."""
