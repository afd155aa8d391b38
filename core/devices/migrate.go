package devices

import "github.com/qvm-dev/qvm/core"

// MigratePCIPorts rewrites legacy PCI port ids (BB_DD.F of R4.0-R4.2) to
// PCI paths, as the reference does on load since v4.3.24; an id sysfs does
// not know is kept. It returns the notes to log, one per change.
func MigratePCIPorts(app *core.App, sys SysFS) []string {
	var notes []string
	for _, d := range app.Domains() {
		c := d.DeviceClass(PCI)
		if c == nil {
			continue
		}
		for _, da := range c.Devices {
			if da.Port == Any || sys.IsPCIPath(da.Port) {
				continue
			}
			if p, ok, err := sys.SBDFToPath(da.Port); err == nil && ok {
				notes = append(notes, d.Name()+": PCI device "+da.Port+" is now "+p)
				da.Port = p
			}
		}
	}
	return notes
}
