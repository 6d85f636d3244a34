# roster.hcl: the java example, a pool of Tomcat servers on one host.
# `roster validate examples/java` checks this file and the role files it
# names; docs/configuration.md describes every setting, docs/roles/tomcat.md
# the role.

cluster  = "java"
data_dir = ".roster" # state, plugins and logs; relative to this file
spares   = 1         # idle machines kept warm on the global queue
roles    = ["roles/*.hcl"]

queue "local" {} # embedded and durable; one host

provider "local" { # machines are processes on this host
  max_machines = 6
}

# The tomcat servers register here: haproxy on 127.0.0.1:8080 spreads the
# requests over their apache fronts.
balancer "haproxy" "front" {
  frontend = "127.0.0.1:8080"
}

logs {
  destination = "file://.roster/logs"
}

api {
  address = "127.0.0.1:7070"
}
