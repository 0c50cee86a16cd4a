package main

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (not its metadata unless needed to read the data back),
// as Pebble's WAL sync does on Linux.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
