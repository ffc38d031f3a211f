package streammgr

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/evergreen-edge/evergreen/services/kit/config"
	"github.com/evergreen-edge/evergreen/services/kit/errdefs"
	"github.com/evergreen-edge/evergreen/services/kit/groupdef"
)

// FunctionName is v1's stream manager system function
// (arn:aws:lambda:::function:GGStreamManager:1): its environment variables
// in the deployed group configure the stream manager (spec §2.7).
const FunctionName = "GGStreamManager"

// v1's environment variables of the GGStreamManager function.
const (
	EnvStoreRootDir       = "STREAM_MANAGER_STORE_ROOT_DIR"
	EnvServerPort         = "STREAM_MANAGER_SERVER_PORT"
	EnvAuthenticateClient = "STREAM_MANAGER_AUTHENTICATE_CLIENT"
	EnvMaxBandwidth       = "STREAM_MANAGER_EXPORTER_MAX_BANDWIDTH"
	EnvThreadPoolSize     = "STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE"
	EnvS3MinPartSize      = "STREAM_MANAGER_EXPORTER_S3_DESTINATION_MULTIPART_UPLOAD_MIN_PART_SIZE_BYTES"
	EnvReadOnlyDirs       = "STREAM_MANAGER_READ_ONLY_DIRS"
	EnvJVMArgs            = "JVM_ARGS"
)

// Settings are the stream manager's settings in force: config.json's
// evergreen.streams, overridden by the group's GGStreamManager function.
type Settings struct {
	AuthenticateClient bool
	// MaxBandwidthKbps is kbit/s (kilo = 1000), 0 unlimited.
	MaxBandwidthKbps int64
	ThreadPoolSize   int
	S3MinPartSize    int64
	// Ignored lists the variables set in the group that do not apply here,
	// each with why (logged at every apply): the store directory and the
	// port are config.json's, and functions are told the real port.
	Ignored []string
}

// SettingsFromGroup returns the settings in force under g: cfg's, with
// every GGStreamManager variable of g applied over them (v1 configured the
// stream manager there; leaving a variable out, or the function out,
// leaves config.json's value). listen is the address the server listens
// on and storeDir where streams are kept, to tell the variables that agree
// from those that are ignored. A bad value is an error naming its path in
// the group, e.g.
// Functions[1].FunctionConfiguration.Environment.Variables.STREAM_MANAGER_EXPORTER_THREAD_POOL_SIZE.
//
// Unlike v1, the stream manager runs whether or not the group has the
// function: a group without it simply does not use it.
func SettingsFromGroup(g *groupdef.Group, cfg config.Streams, listen, storeDir string) (Settings, error) {
	s := Settings{AuthenticateClient: cfg.AuthenticateClient, MaxBandwidthKbps: cfg.ExporterMaxBandwidthKbps,
		ThreadPoolSize: cfg.ExporterThreadPoolSize, S3MinPartSize: cfg.S3MultipartMinPartSizeBytes}
	p, vars, found, err := g.SystemFunction(FunctionName)
	if err != nil || !found {
		return s, err
	}
	if err := s.applyEnv(p+".FunctionConfiguration.Environment.Variables.", vars, listen, storeDir); err != nil {
		return Settings{}, err
	}
	return s, nil
}

func (s *Settings) applyEnv(prefix string, vars map[string]string, listen, storeDir string) error {
	integer := func(name string, lo, hi int64, unit string) (int64, bool, error) {
		v, ok := vars[name]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, false, errdefs.InvalidArgument(prefix+name, "%q is not a whole number of %s in %d..%d", v, unit, lo, hi)
		}
		return n, true, nil
	}
	if v, ok := vars[EnvAuthenticateClient]; ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			s.AuthenticateClient = true
		case "false":
			s.AuthenticateClient = false
		default:
			return errdefs.InvalidArgument(prefix+EnvAuthenticateClient, "%q is neither true nor false", v)
		}
	}
	if n, ok, err := integer(EnvMaxBandwidth, 0, 100<<20, "kbit/s"); err != nil {
		return err
	} else if ok {
		s.MaxBandwidthKbps = n
	}
	if n, ok, err := integer(EnvThreadPoolSize, 1, 64, "threads"); err != nil {
		return err
	} else if ok {
		s.ThreadPoolSize = int(n)
	}
	if n, ok, err := integer(EnvS3MinPartSize, 5242880, 5<<30, "bytes"); err != nil {
		return err
	} else if ok {
		s.S3MinPartSize = n
	}
	if n, ok, err := integer(EnvServerPort, 1, 65535, "port"); err != nil {
		return err
	} else if ok {
		if _, port, err := net.SplitHostPort(listen); err != nil || port != strconv.FormatInt(n, 10) {
			s.Ignored = append(s.Ignored, fmt.Sprintf("%s=%d: the stream manager listens on %s (evergreen.listen.streams in config.json); functions are given that port", EnvServerPort, n, listen))
		}
	}
	if v, ok := vars[EnvStoreRootDir]; ok {
		if !filepath.IsAbs(v) {
			return errdefs.InvalidArgument(prefix+EnvStoreRootDir, "%q is not an absolute path", v)
		}
		if filepath.Clean(v) != filepath.Clean(storeDir) {
			s.Ignored = append(s.Ignored, fmt.Sprintf("%s=%s: streams are kept in %s (link that directory elsewhere to move them)", EnvStoreRootDir, v, storeDir))
		}
	}
	if v, ok := vars[EnvReadOnlyDirs]; ok {
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" && !filepath.IsAbs(d) {
				return errdefs.InvalidArgument(prefix+EnvReadOnlyDirs, "%q is not an absolute path", d)
			}
		}
		// The stream manager is a process, not in a container: it reads
		// what its user may read, so there is nothing to mount.
	}
	if _, ok := vars[EnvJVMArgs]; ok {
		s.Ignored = append(s.Ignored, EnvJVMArgs+": there is no JVM")
	}
	return nil
}
