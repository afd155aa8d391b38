package core

import (
	"regexp"
	"strings"
)

var reFeatureName = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)

var protectedFeatures = map[string]bool{
	"deferred-netvm-original": true, "preload-dispvm": true,
	"preload-dispvm-completed": true, "preload-dispvm-in-progress": true,
}

// SetFeature sets a feature with the Admin API's rules and side effects.
func (a *App) SetFeature(d *Domain, name, value string) error {
	for i := 0; i < len(value); i++ {
		if value[i] < 0x20 || value[i] > 0x7e {
			return valueErrorf("Invalid feature value for '%s': only printable ASCII is allowed", name)
		}
	}
	if protectedFeatures[name] {
		return valueErrorf("Feature '%s' cannot be set directly", name)
	}
	svc, isService := strings.CutPrefix(name, "service.")
	if isService {
		if err := checkServiceName(svc); err != nil {
			return err
		}
	}
	if !reFeatureName.MatchString(name) {
		return valueErrorf("Invalid feature name: '%s'", name)
	}
	if isService {
		if svc == "meminfo-writer" && d.IsQubesVM() {
			// Legacy switch: it becomes maxmem (on: default, off: 0).
			if value != "" {
				delete(d.props, "maxmem")
			} else {
				d.props["maxmem"] = intValue(0)
			}
			d.deleteFeature(name)
			return nil
		}
	}
	if err := checkFeatureValue(d, name, value); err != nil {
		return err
	}
	d.setFeature(name, value)
	return nil
}

// DeleteFeature removes a feature (absent is fine).
func (a *App) DeleteFeature(d *Domain, name string) error {
	if protectedFeatures[name] {
		return valueErrorf("Feature '%s' cannot be removed directly", name)
	}
	d.deleteFeature(name)
	return nil
}

func checkServiceName(svc string) error {
	switch {
	case svc == "":
		return valueErrorf("Service name cannot be empty")
	case strings.Contains(svc, "/"), svc == ".", svc == "..":
		return valueErrorf("Invalid service name: '%s'", svc)
	case len(svc) > 48 && !strings.HasPrefix(svc, "app-dispvm."):
		return valueErrorf("Service name too long (max 48 characters): '%s'", svc)
	}
	return nil
}

var (
	reDigits  = regexp.MustCompile(`^[0-9]+$`)
	reNumber  = regexp.MustCompile(`^[0-9]+(\.[0-9]*)?$`)
	reVMConf  = regexp.MustCompile(`^[A-Za-z]`)
	rePersist = regexp.MustCompile(`^(file|dir):[^:]*:[^:]*:[0-7]{1,4}:/`)
)

func checkFeatureValue(d *Domain, name, value string) error {
	switch {
	case strings.HasPrefix(name, "vm-config."):
		k := strings.TrimPrefix(name, "vm-config.")
		if k == "" || len(k) > 52 || !reVMConf.MatchString(k) {
			return valueErrorf("Invalid vm-config feature name: '%s'", name)
		}
	case strings.HasPrefix(name, "custom-persist."):
		k := strings.TrimPrefix(name, "custom-persist.")
		if k == "" || len(k) > 54 {
			return valueErrorf("Invalid custom-persist key: '%s'", k)
		}
		if !strings.HasPrefix(value, "/") && !rePersist.MatchString(value) {
			return valueErrorf("Invalid custom-persist value: '%s'", value)
		}
	case name == "preload-dispvm-max" || name == "preload-dispvm-threshold":
		if value != "" && !reDigits.MatchString(value) {
			return valueErrorf("Feature '%s' must be a non-negative integer", name)
		}
	case name == "preload-dispvm-delay":
		if value != "" && !reNumber.MatchString(value) {
			return valueErrorf("Feature '%s' must be a number", name)
		}
	}
	return nil
}
