package commands

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// deviceScriptSetup points the device scripts at the fixture sysfs tree
// (core/devices/testdata, a real PCI tree) through $DEVICE_SYSFS.
func deviceScriptSetup(e *testscript.Env) error {
	abs, err := filepath.Abs("../core/devices/testdata/sysfs/sys")
	if err != nil {
		return err
	}
	e.Setenv("DEVICE_SYSFS", abs)
	return nil
}

// cmdMkloop: "mkloop VAR FILE SIZE [ro]" makes FILE of SIZE bytes, sets
// a loop device up on it (root only) and puts its name (loopN) in $VAR;
// it is torn down when the script ends. Scripts guard it with [root].
func cmdMkloop(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: mkloop VAR FILE SIZE [ro]")
	}
	size, err := strconv.ParseInt(args[2], 10, 64)
	ts.Check(err)
	file := ts.MkAbs(args[1])
	ts.Check(os.WriteFile(file, nil, 0o644))
	ts.Check(os.Truncate(file, size))
	la := []string{"-f", "--show"}
	if len(args) > 3 && args[3] == "ro" {
		la = append(la, "-r")
	}
	out, err := exec.Command("losetup", append(la, file)...).CombinedOutput()
	if err != nil {
		ts.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	ts.Defer(func() { _ = exec.Command("losetup", "-d", dev).Run() })
	ts.Setenv(args[0], filepath.Base(dev))
}
