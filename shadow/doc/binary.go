package doc

import (
	"errors"
	"fmt"
)

// storedFormat is the version of the persisted form. Bump it, and keep
// reading the old one, whenever the layout changes.
const storedFormat = 1

type stored struct {
	Format       int            `json:"format"`
	Exists       bool           `json:"exists"`
	Version      int64          `json:"version"`
	Desired      map[string]any `json:"desired,omitempty"`
	Reported     map[string]any `json:"reported,omitempty"`
	MetaDesired  map[string]any `json:"metaDesired,omitempty"`
	MetaReported map[string]any `json:"metaReported,omitempty"`
}

// MarshalBinary is the stored form for persistence: JSON with sorted keys,
// so equal shadows store as equal bytes, and a format field.
func (s Shadow) MarshalBinary() ([]byte, error) {
	return encode(stored{
		Format:       storedFormat,
		Exists:       s.Exists,
		Version:      s.Version,
		Desired:      s.Desired,
		Reported:     s.Reported,
		MetaDesired:  s.MetaDesired,
		MetaReported: s.MetaReported,
	})
}

// UnmarshalBinary reads what MarshalBinary wrote. Numbers come back as
// json.Number, exactly as they were sent.
func (s *Shadow) UnmarshalBinary(b []byte) error {
	v, err := decode(b)
	if err != nil {
		return fmt.Errorf("shadow: stored form: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("shadow: stored form is not an object")
	}
	format, err := intField(m, "format")
	if err != nil {
		return err
	}
	if format != storedFormat {
		return fmt.Errorf("shadow: stored format %d is not supported", format)
	}
	ver, err := intField(m, "version")
	if err != nil {
		return err
	}
	exists, ok := m["exists"].(bool)
	if !ok {
		return errors.New("shadow: stored form lacks exists")
	}
	out := Shadow{Version: ver, Exists: exists}
	for name, dst := range map[string]*map[string]any{
		"desired": &out.Desired, "reported": &out.Reported,
		"metaDesired": &out.MetaDesired, "metaReported": &out.MetaReported,
	} {
		raw, present := m[name]
		if !present || raw == nil {
			continue
		}
		sec, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("shadow: stored %s is not an object", name)
		}
		if len(sec) > 0 {
			*dst = sec
		}
	}
	*s = out
	return nil
}

func intField(m map[string]any, name string) (int64, error) {
	n, ok := m[name].(interface{ Int64() (int64, error) })
	if !ok {
		return 0, fmt.Errorf("shadow: stored form lacks %s", name)
	}
	v, err := n.Int64()
	if err != nil || v < 0 {
		return 0, fmt.Errorf("shadow: stored %s is not a count", name)
	}
	return v, nil
}
