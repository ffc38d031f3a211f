package cloud

import (
	"strconv"

	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// SpoolerFunctionName is the v1 system function whose environment variables
// configure the cloud spooler (arn:aws:lambda:::function:GGCloudSpooler:1).
const SpoolerFunctionName = "GGCloudSpooler"

// Environment variables of the GGCloudSpooler function. The GG_CONFIG_ ones
// are v1's; the EVERGREEN_ ones are ours.
const (
	EnvStorageType         = "GG_CONFIG_STORAGE_TYPE"
	EnvMaxSizeBytes        = "GG_CONFIG_MAX_SIZE_BYTES"
	EnvSubscriptionQuality = "GG_CONFIG_SUBSCRIPTION_QUALITY"
	EnvWhenFull            = "EVERGREEN_SPOOLER_WHEN_FULL"
	EnvMaxInflight         = "EVERGREEN_CLOUD_MAX_INFLIGHT"
)

// Values of the settings.
const (
	StorageMemory     = "Memory"
	StorageFileSystem = "FileSystem"

	QualityAtMostOnce            = "AtMostOnce"
	QualityAtLeastOncePersistent = "AtLeastOncePersistent"

	WhenFullDropOldest = "DropOldest"
	WhenFullRefuseNew  = "RefuseNew"
)

// Limits and defaults of the settings.
const (
	// MinMaxBytes is v1's floor for GG_CONFIG_MAX_SIZE_BYTES; v1 refused to
	// start below it.
	MinMaxBytes int64 = 262144
	// DefaultMaxBytes is v1's 2.5 MB.
	DefaultMaxBytes int64 = 2621440
	// DefaultMaxInflight is how many QoS 1 publishes may await their PUBACK
	// (v1 allowed one).
	DefaultMaxInflight = 100
	MaxMaxInflight     = 65535
)

// SpoolerSettings are the settings of the spooler, from the GGCloudSpooler
// function's environment in the group (v1) plus our own.
type SpoolerSettings struct {
	// Storage is StorageMemory (lost on restart) or StorageFileSystem
	// (durable).
	Storage string
	// MaxBytes bounds the queue: the sum of topic and payload lengths of the
	// queued messages. At least MinMaxBytes.
	MaxBytes int64
	// SubscriptionQuality is QualityAtMostOnce (QoS 0 subscriptions, clean
	// sessions) or QualityAtLeastOncePersistent (QoS 1 subscriptions,
	// persistent sessions).
	SubscriptionQuality string
	// WhenFull is WhenFullDropOldest (v1) or WhenFullRefuseNew.
	WhenFull string
	// MaxInflight is how many publishes may await their PUBACK, 1..65535.
	MaxInflight int
}

// DefaultSpoolerSettings returns v1's defaults: Memory, 2.5 MB, AtMostOnce,
// drop the oldest when full, and our window of 100.
func DefaultSpoolerSettings() SpoolerSettings {
	return SpoolerSettings{
		Storage:             StorageMemory,
		MaxBytes:            DefaultMaxBytes,
		SubscriptionQuality: QualityAtMostOnce,
		WhenFull:            WhenFullDropOldest,
		MaxInflight:         DefaultMaxInflight,
	}
}

// Validate checks every field; the error names the field and wraps
// errdefs.ErrInvalidArgument.
func (s SpoolerSettings) Validate() error {
	switch {
	case s.Storage != StorageMemory && s.Storage != StorageFileSystem:
		return errdefs.InvalidArgument("Storage", "%q is not %s or %s", s.Storage, StorageMemory, StorageFileSystem)
	case s.MaxBytes < MinMaxBytes:
		return errdefs.InvalidArgument("MaxBytes", "%d is less than the minimum %d", s.MaxBytes, MinMaxBytes)
	case s.SubscriptionQuality != QualityAtMostOnce && s.SubscriptionQuality != QualityAtLeastOncePersistent:
		return errdefs.InvalidArgument("SubscriptionQuality", "%q is not %s or %s", s.SubscriptionQuality, QualityAtMostOnce, QualityAtLeastOncePersistent)
	case s.WhenFull != WhenFullDropOldest && s.WhenFull != WhenFullRefuseNew:
		return errdefs.InvalidArgument("WhenFull", "%q is not %s or %s", s.WhenFull, WhenFullDropOldest, WhenFullRefuseNew)
	case s.MaxInflight < 1 || s.MaxInflight > MaxMaxInflight:
		return errdefs.InvalidArgument("MaxInflight", "%d is not in 1..%d", s.MaxInflight, MaxMaxInflight)
	}
	return nil
}

// SettingsFromGroup reads the spooler settings from the environment of the
// group's GGCloudSpooler function. A nil group, a group without that
// function, or a variable left out gives the default, as in v1 ("removing
// the function from the definition restores defaults"). A bad value is an
// error naming its path in the group, for example
// Functions[2].FunctionConfiguration.Environment.Variables.GG_CONFIG_MAX_SIZE_BYTES,
// wrapping errdefs.ErrInvalidArgument. Variables the spooler does not know
// are ignored, as v1 did.
func SettingsFromGroup(g *groupdef.Group) (SpoolerSettings, error) {
	s := DefaultSpoolerSettings()
	p, vars, found, err := g.SystemFunction(SpoolerFunctionName)
	if err != nil || !found {
		return s, err
	}
	if err := s.applyEnv(p+".FunctionConfiguration.Environment.Variables.", vars); err != nil {
		return DefaultSpoolerSettings(), err
	}
	return s, nil
}

func (s *SpoolerSettings) applyEnv(prefix string, vars map[string]string) error {
	oneOf := func(name string, dst *string, allowed ...string) error {
		v, ok := vars[name]
		if !ok {
			return nil
		}
		for _, a := range allowed {
			if v == a {
				*dst = v
				return nil
			}
		}
		return errdefs.InvalidArgument(prefix+name, "%q is not %s or %s", v, allowed[0], allowed[1])
	}
	if err := oneOf(EnvStorageType, &s.Storage, StorageMemory, StorageFileSystem); err != nil {
		return err
	}
	if v, ok := vars[EnvMaxSizeBytes]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil:
			return errdefs.InvalidArgument(prefix+EnvMaxSizeBytes, "%q is not a whole number of bytes", v)
		case n < MinMaxBytes:
			return errdefs.InvalidArgument(prefix+EnvMaxSizeBytes, "%d is less than the minimum %d (v1 refused to start below it)", n, MinMaxBytes)
		}
		s.MaxBytes = n
	}
	if err := oneOf(EnvSubscriptionQuality, &s.SubscriptionQuality, QualityAtMostOnce, QualityAtLeastOncePersistent); err != nil {
		return err
	}
	if err := oneOf(EnvWhenFull, &s.WhenFull, WhenFullDropOldest, WhenFullRefuseNew); err != nil {
		return err
	}
	if v, ok := vars[EnvMaxInflight]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxMaxInflight {
			return errdefs.InvalidArgument(prefix+EnvMaxInflight, "%q is not a whole number in 1..%d", v, MaxMaxInflight)
		}
		s.MaxInflight = n
	}
	return nil
}
