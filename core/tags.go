package core

func checkTagChars(t string) error {
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return valueErrorf("Invalid character in tag")
		}
	}
	return nil
}

// AddTag adds a tag (present already is fine).
func (a *App) AddTag(d *Domain, tag string) error {
	if tag == "" {
		return valueErrorf("tag cannot be empty")
	}
	if err := checkTagChars(tag); err != nil {
		return valueErrorf("disallowed characters in tag: '%s'", tag)
	}
	d.Tags[tag] = true
	return nil
}

// RemoveTag removes a tag (absent is fine).
func (a *App) RemoveTag(d *Domain, tag string) { delete(d.Tags, tag) }
