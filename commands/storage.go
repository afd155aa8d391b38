package commands

import (
	"github.com/qvm-dev/qvm/storage"
)

// storageOptions wires the storage package to the command's settings:
// running markers in QVM_RUN_DIR (default /var/run/qubes), warnings to the log.
func (env *Env) storageOptions() storage.Options {
	run := env.cfg.GetString("run-dir")
	return storage.Options{RunDir: run, Now: env.Now, Log: func(msg string) {
		if env.log != nil {
			env.log.Warn(msg)
		}
	}}
}
