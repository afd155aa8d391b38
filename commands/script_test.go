package commands

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/qvm-dev/qvm/core/virt"
	"github.com/qvm-dev/qvm/core/virt/lvconn"
	"github.com/qvm-dev/qvm/internal/scripttest"
)

// TestMain lets the test binary act as qvm and as its qvm-* aliases, so the
// scripts run the real command line in a child process.
func TestMain(m *testing.M) {
	// On a real dom0 a backup of dom0 would read the user's own home:
	// tests name their dom0 user and home where they want one.
	if os.Getenv("QVM_DOM0_HOME") == "" {
		os.Setenv("QVM_DOM0_HOME", "/nonexistent/qvm-test-dom0-home")
	}
	// Started by qvm (this binary, below) as its hypervisor helper.
	if os.Getenv(virt.EnvHelperChild) == "1" {
		os.Exit(lvconn.Main(os.Args[1:]))
	}
	// qvm in this process and in the children below finds its helper here.
	if os.Getenv("QVM_VIRT_HELPER") == "" {
		os.Setenv("QVM_VIRT_HELPER", os.Args[0])
	}
	// Concurrency and crash tests start this binary as qvm.
	if os.Getenv("QVM_TEST_AS_QVM") == "1" {
		os.Exit(Main(append([]string{"qvm"}, os.Args[1:]...), StdIO()))
	}
	cmds := map[string]func(){
		"qvm": func() { os.Exit(MainContext(context.Background(), os.Args, StdIO(), scriptClock())) },
	}
	for _, a := range AliasNames() {
		cmds[a] = func() { os.Exit(MainContext(context.Background(), os.Args, StdIO(), scriptClock())) }
	}
	testscript.Main(m, cmds)
}

// TestScript runs commands/testdata/script/*.txtar: what a user sees
// (stdout, stderr, exit codes, files).
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("QVM_STATE_DIR", e.WorkDir+"/state")
			e.Setenv("QVM_CONFIG", e.WorkDir+"/qvm.yaml")
			return deviceScriptSetup(e)
		},
		Condition: func(cond string) (bool, error) {
			if cond == "root" {
				return os.Geteuid() == 0, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkloop":   cmdMkloop,
			"exitcode": scripttest.Exitcode,
		},
	})
}
