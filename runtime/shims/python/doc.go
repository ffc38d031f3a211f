// Package python holds the Python side of the v1 Lambda runtime: the
// lambda_runtime.py worker entry point and the core-shipped libraries user
// code imports (greengrass_common, greengrass_ipc_python_sdk) plus a
// greengrasssdk for functions that do not bundle one. They speak the v1 IPC
// of spec §1.3 to the runtime's IPC server; Files carries them so the
// daemon can install them next to the functions it starts.
package python
