// Package backup reads and writes the Qubes backup format (version 4, and
// version 3 for reading): the outer tar, the per-chunk scrypt containers,
// the backup header and the inner per-file tars.
package backup
