// Package storage holds the pool drivers (file-reflink, file, lvm_thin,
// linux-kernel) and the volume lifecycle (create, start, stop, commit,
// revisions, resize, import, export) on real files and devices.
package storage
