#!/usr/bin/env bash
# deploy.sh: deploy a group definition to an Evergreen core over any MQTT
# broker that the core uses as its cloud (docs/cloud.md), and follow the
# deployment's status until it succeeds or fails.
#
#   deploy.sh -h HOST [-p PORT] -t CORE_THING [mosquitto TLS options] GROUP.json
#   deploy.sh -h HOST -t CORE_THING --reset
#
# Every option other than -t, -i, --reset and --type is passed to
# mosquitto_pub and mosquitto_sub as is (-h, -p, --cafile, --cert, --key,
# -u, -P ...). Exit status: 0 on Success, 1 on Failure, 2 on a usage error,
# 3 when no final status arrived within $DEPLOY_TIMEOUT seconds (300).
set -euo pipefail

thing="" id="d-$(date +%s)-$$" type=NewDeployment file="" mqtt=()
while [ $# -gt 0 ]; do
	case "$1" in
	-t) thing=$2; shift 2 ;;
	-i) id=$2; shift 2 ;;
	--type) type=$2; shift 2 ;;
	--reset) type=ResetDeployment; shift ;;
	-h|-p|--cafile|--cert|--key|-u|-P|--capath|--tls-version|--id-prefix) mqtt+=("$1" "$2"); shift 2 ;;
	--insecure) mqtt+=("$1"); shift ;;
	-*) echo "deploy.sh: unknown option $1" >&2; exit 2 ;;
	*) file=$1; shift ;;
	esac
done
if [ -z "$thing" ]; then echo "deploy.sh: -t CORE_THING is required" >&2; exit 2; fi
case "$type" in
NewDeployment|Redeployment) [ -n "$file" ] || [ "$type" = Redeployment ] || { echo "deploy.sh: a group file is required" >&2; exit 2; } ;;
ResetDeployment|ForceResetDeployment) file="" ;;
*) echo "deploy.sh: --type must be NewDeployment, Redeployment, ResetDeployment or ForceResetDeployment" >&2; exit 2 ;;
esac

request=$(python3 - "$id" "$type" "$file" <<'PY'
import json, sys
deployment_id, deployment_type, path = sys.argv[1:4]
req = {"deploymentId": deployment_id, "deploymentType": deployment_type}
if path:
    with open(path) as f:
        req["group"] = json.load(f)
print(json.dumps(req, separators=(",", ":")))
PY
)

status_topic="evergreen/things/$thing/deployments/status"
request_topic="evergreen/things/$thing/deployments/request"
coproc SUB { exec mosquitto_sub "${mqtt[@]}" -q 1 -t "$status_topic" -W "${DEPLOY_TIMEOUT:-300}"; }
trap 'kill "$SUB_PID" 2>/dev/null || true' EXIT
sleep 1 # let the subscription land before the request
mosquitto_pub "${mqtt[@]}" -q 1 -t "$request_topic" -m "$request"
echo "deployment $id ($type) sent to $thing"
while read -r line <&"${SUB[0]}"; do
	case "$line" in *"\"deploymentId\":\"$id\""*) ;; *) continue ;; esac
	echo "$line"
	case "$line" in
	*'"status":"Success"'*) exit 0 ;;
	*'"status":"Failure"'*) exit 1 ;;
	esac
done
echo "deploy.sh: no final status for $id within ${DEPLOY_TIMEOUT:-300} s" >&2
exit 3
