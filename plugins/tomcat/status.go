package tomcat

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/rosterhq/roster/sdk/rolekit"
)

// tomcatStatus is what the role reads of Tomcat's status servlet.
type tomcatStatus struct {
	HeapUsed, HeapMax   float64 // bytes
	CurrentThreads      float64
	BusyThreads         float64
	MaxThreads          float64
	RequestCount        float64
	ConnectorFound      bool
	ConnectorName       string
	OtherConnectorNames []string
}

// statusXML is the shape of StatusManagerServlet's ?XML=true answer.
type statusXML struct {
	JVM struct {
		Memory struct {
			Free  string `xml:"free,attr"`
			Total string `xml:"total,attr"`
			Max   string `xml:"max,attr"`
		} `xml:"memory"`
	} `xml:"jvm"`
	Connectors []struct {
		Name       string `xml:"name,attr"`
		ThreadInfo struct {
			MaxThreads         string `xml:"maxThreads,attr"`
			CurrentThreadCount string `xml:"currentThreadCount,attr"`
			CurrentThreadsBusy string `xml:"currentThreadsBusy,attr"`
		} `xml:"threadInfo"`
		RequestInfo struct {
			RequestCount string `xml:"requestCount,attr"`
		} `xml:"requestInfo"`
	} `xml:"connector"`
}

// fetchStatus asks the private status service about the connector on
// port.
func fetchStatus(ctx context.Context, statusAddr string, port int) (tomcatStatus, error) {
	code, body, err := rolekit.HTTPGet(ctx, statusAddr, statusPath+"?XML=true")
	if err != nil {
		return tomcatStatus{}, fmt.Errorf("tomcat status: %w", err)
	}
	if code != http.StatusOK {
		return tomcatStatus{}, fmt.Errorf("tomcat status: HTTP %d", code)
	}
	return parseStatus(body, port)
}

func parseStatus(body []byte, port int) (tomcatStatus, error) {
	var x statusXML
	if err := xml.Unmarshal(body, &x); err != nil {
		return tomcatStatus{}, fmt.Errorf("tomcat status: %w", err)
	}
	num := func(s string) float64 {
		f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return f
	}
	s := tomcatStatus{
		HeapUsed: num(x.JVM.Memory.Total) - num(x.JVM.Memory.Free),
		HeapMax:  num(x.JVM.Memory.Max),
	}
	// Connector names are quoted, as in "http-nio-127.0.0.1-8080".
	suffix := "-" + strconv.Itoa(port)
	for _, c := range x.Connectors {
		name := strings.Trim(c.Name, `"`)
		if !strings.HasSuffix(name, suffix) {
			s.OtherConnectorNames = append(s.OtherConnectorNames, name)
			continue
		}
		s.ConnectorFound = true
		s.ConnectorName = name
		s.CurrentThreads = num(c.ThreadInfo.CurrentThreadCount)
		s.BusyThreads = num(c.ThreadInfo.CurrentThreadsBusy)
		s.MaxThreads = num(c.ThreadInfo.MaxThreads)
		s.RequestCount = num(c.RequestInfo.RequestCount)
	}
	if !s.ConnectorFound {
		return s, fmt.Errorf("tomcat status: no connector on port %d among %v", port, s.OtherConnectorNames)
	}
	return s, nil
}
