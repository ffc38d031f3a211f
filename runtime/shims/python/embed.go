package python

import "embed"

// Files are the shim sources, rooted like the install directory: the
// runtime starts `python3 <dir>/lambda_runtime.py --handler=m.f`.
//
// Globs rather than directory names: go:embed skips "_"-prefixed files
// (every __init__.py) when given a directory, and "all:" would also take
// __pycache__ left behind by a local test run.
//
//go:embed lambda_runtime.py
//go:embed greengrass_common/*.py
//go:embed greengrass_ipc_python_sdk/*.py greengrass_ipc_python_sdk/utils/*.py
//go:embed greengrasssdk/*.py greengrasssdk/utils/*.py
//go:embed greengrasssdk/stream_manager/*.py greengrasssdk/stream_manager/data/*.py
var Files embed.FS
