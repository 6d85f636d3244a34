# roster.hcl: an orchestrator on one host, with everything embedded.
# `roster validate` checks this file and the role files it names;
# docs/configuration.md describes every setting.

cluster  = "basic"   # prefixes queue names, tags machines
data_dir = ".roster" # state, plugins and logs; relative to this file
spares   = 1         # idle machines kept warm on the global queue
roles    = ["roles/*.hcl"]

queue "local" {} # embedded and durable; one host

provider "local" {    # machines are processes on this host
  boot_delay   = "2s" # pretend a machine takes this long to boot
  max_machines = 8
}

# Roles register their servers here; "none" only keeps the list.
balancer "none" "front" {}

logs {
  destination = "file://.roster/logs"
}

api {
  address = "127.0.0.1:7070"
}
