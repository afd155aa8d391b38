package backup

import "syscall"

type syscallStat struct{ blocks int64 }

func statBlocks(p string, s *syscallStat) {
	var st syscall.Stat_t
	if syscall.Stat(p, &st) == nil {
		s.blocks = st.Blocks
	}
}
