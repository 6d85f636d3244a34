# roles/tomcat.hcl: the java example's pool, served by the built-in `tomcat`
# plugin: Tomcat 10 from Debian with apache2 in front, serving hello.war.
# docs/roles/tomcat.md describes every config attribute.

role "tomcat" {
  plugin = "tomcat"

  count {
    min = 2
    max = 4
  }

  scale {
    metric        = "busy_ratio" # busy connector threads / max_threads
    up_above      = 0.6
    down_below    = 0.1
    window        = "30s"
    cooldown_up   = "30s"
    cooldown_down = "2m"
  }

  health {
    interval        = "5s"
    timeout         = "2s"
    unhealthy_after = 3
    lost_after      = "15s"
  }

  provision { timeout = "10m" } # installing packages can take minutes
  drain { timeout = "60s" }

  register {
    balancer = "front"
    endpoint = "http" # apache's, with apache_front
  }

  config {
    war             = "file://../hello.war" # relative to this file
    war_sha256      = "bbf2513e665307baece9111ea3bb2abc53ea14a95bd7208db9cb0d47a61fbaca"
    context_path    = "/"
    heap_mb         = 256
    jvm_options     = ["-XX:+UseSerialGC"] # small heaps start faster with it
    max_threads     = 50
    health_path     = "/health.jsp"
    apache_front    = true
    install_missing = true
  }
}
