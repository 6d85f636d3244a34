package ec2_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"
)

// fakeEC2 is the recorded-request fake of the EC2 Query API: no local EC2
// server exists, so the tests check what the provider sends and how it
// handles EC2's answers against this. It records every form-encoded
// request and answers from the XML fixtures in testdata/, written from the
// EC2 API reference. A small model of instances (with EC2's ClientToken
// rule) fills the answers; scripted answers, consumed first, stand for
// errors and throttling.
type fakeEC2 struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	requests  []recorded
	scripts   map[string][]answer
	instances []*fakeInstance
	byToken   map[string]*fakeInstance
	// hidden instances are not yet seen by DescribeInstances, as happens
	// on EC2 for a moment after a launch (eventual consistency).
	hideNew bool
	// pageSize splits DescribeInstances answers into pages (0: one page).
	pageSize int
	seq      int
}

type recorded struct {
	Action string
	Form   url.Values
}

// answer is a scripted reply: an HTTP status and an error code (empty for
// the model's answer).
type answer struct {
	status int
	code   string
}

type fakeInstance struct {
	ID, State, Subnet, IP, ClientToken string
	Launched                           time.Time
	Tags                               map[string]string
	hidden                             bool
}

type tag struct{ Key, Value string }

// StateCode is EC2's code for the instance state.
func (i *fakeInstance) StateCode() int {
	return map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}[i.State]
}

// DashedIP is the IP as it appears in the private DNS name.
func (i *fakeInstance) DashedIP() string { return strings.ReplaceAll(i.IP, ".", "-") }

// LaunchTime in the format EC2 writes.
func (i *fakeInstance) LaunchTime() string {
	return i.Launched.UTC().Format("2006-01-02T15:04:05.000Z")
}

// TagList is the sorted, XML-escaped tags.
func (i *fakeInstance) TagList() []tag {
	var out []tag
	for k, v := range i.Tags {
		out = append(out, tag{xmlEscape(k), xmlEscape(v)})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	return out
}

var fixtures = template.Must(template.ParseGlob("testdata/*.xml"))

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func newFakeEC2(t *testing.T) *fakeEC2 {
	t.Helper()
	f := &fakeEC2{t: t, scripts: map[string][]answer{}, byToken: map[string]*fakeInstance{}}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

// script queues answers for an action, used before the model answers.
func (f *fakeEC2) script(action string, as ...answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scripts[action] = append(f.scripts[action], as...)
}

// calls returns the recorded requests of an action, in order.
func (f *fakeEC2) calls(action string) []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []url.Values
	for _, r := range f.requests {
		if r.Action == action {
			out = append(out, r.Form)
		}
	}
	return out
}

func (f *fakeEC2) actions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.requests {
		out = append(out, r.Action)
	}
	return out
}

// add puts an instance into the model, as if launched earlier.
func (f *fakeEC2) add(in *fakeInstance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances = append(f.instances, in)
}

func (f *fakeEC2) liveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, in := range f.instances {
		if in.State != "shutting-down" && in.State != "terminated" {
			n++
		}
	}
	return n
}

func (f *fakeEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		f.t.Errorf("fake EC2: request without a SigV4 signature")
	}
	form := r.PostForm
	action := form.Get("Action")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, recorded{Action: action, Form: form})
	f.seq++
	reqID := fmt.Sprintf("00000000-0000-4000-8000-%012d", f.seq)
	if q := f.scripts[action]; len(q) > 0 {
		f.scripts[action] = q[1:]
		if q[0].code != "" {
			f.reply(w, q[0].status, "error.xml", map[string]string{
				"Code": q[0].code, "Message": xmlEscape("scripted " + q[0].code), "RequestID": reqID})
			return
		}
	}
	switch action {
	case "RunInstances":
		f.runInstances(w, form, reqID)
	case "DescribeInstances":
		f.describeInstances(w, form, reqID)
	case "TerminateInstances":
		f.terminateInstances(w, form, reqID)
	default:
		f.reply(w, http.StatusBadRequest, "error.xml", map[string]string{
			"Code": "InvalidAction", "Message": "The action " + xmlEscape(action) + " is not valid for this web service.", "RequestID": reqID})
	}
}

func (f *fakeEC2) reply(w http.ResponseWriter, status int, fixture string, data any) {
	var b bytes.Buffer
	if err := fixtures.ExecuteTemplate(&b, fixture, data); err != nil {
		f.t.Errorf("fake EC2: fixture %s: %v", fixture, err)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (f *fakeEC2) runInstances(w http.ResponseWriter, form url.Values, reqID string) {
	token := form.Get("ClientToken")
	in := f.byToken[token]
	if in == nil || token == "" {
		n := len(f.instances) + 1
		in = &fakeInstance{
			ID:          fmt.Sprintf("i-%017x", 0xabc000+n),
			State:       "pending",
			Subnet:      form.Get("SubnetId"),
			IP:          fmt.Sprintf("10.0.0.%d", 10+n),
			ClientToken: token,
			Launched:    time.Date(2025, 3, 1, 12, 0, n, 0, time.UTC),
			Tags:        tagsOf(form, "instance"),
			hidden:      f.hideNew,
		}
		f.instances = append(f.instances, in)
		if token != "" {
			f.byToken[token] = in
		}
	}
	f.reply(w, http.StatusOK, "run-instances.xml", map[string]any{
		"RequestID": reqID, "ReservationID": "r-" + in.ID[2:], "Instances": []*fakeInstance{in}})
}

// tagsOf reads the tags of the TagSpecification for resource type rt.
func tagsOf(form url.Values, rt string) map[string]string {
	out := map[string]string{}
	for i := 1; ; i++ {
		p := "TagSpecification." + strconv.Itoa(i) + "."
		typ := form.Get(p + "ResourceType")
		if typ == "" {
			return out
		}
		if typ != rt {
			continue
		}
		for j := 1; ; j++ {
			k := form.Get(p + "Tag." + strconv.Itoa(j) + ".Key")
			if k == "" {
				break
			}
			out[k] = form.Get(p + "Tag." + strconv.Itoa(j) + ".Value")
		}
	}
}

// filtersOf reads Filter.N.Name / Filter.N.Value.M.
func filtersOf(form url.Values) map[string][]string {
	out := map[string][]string{}
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i) + "."
		name := form.Get(p + "Name")
		if name == "" {
			return out
		}
		for j := 1; ; j++ {
			v, ok := form[p+"Value."+strconv.Itoa(j)]
			if !ok {
				break
			}
			out[name] = append(out[name], v...)
		}
	}
}

func (f *fakeEC2) describeInstances(w http.ResponseWriter, form url.Values, reqID string) {
	filters := filtersOf(form)
	var match []*fakeInstance
next:
	for _, in := range f.instances {
		if in.hidden {
			continue
		}
		for name, values := range filters {
			var have []string
			switch {
			case name == "instance-state-name":
				have = []string{in.State}
			case name == "tag-key":
				for k := range in.Tags {
					have = append(have, k)
				}
			case strings.HasPrefix(name, "tag:"):
				v, ok := in.Tags[strings.TrimPrefix(name, "tag:")]
				if ok {
					have = []string{v}
				}
			default:
				f.t.Errorf("fake EC2: unexpected filter %q", name)
			}
			if !intersects(have, values) {
				continue next
			}
		}
		match = append(match, in)
	}
	start := 0
	if tok := form.Get("NextToken"); tok != "" {
		start, _ = strconv.Atoi(tok)
	}
	end, next := len(match), ""
	if f.pageSize > 0 && start+f.pageSize < len(match) {
		end, next = start+f.pageSize, strconv.Itoa(start+f.pageSize)
	}
	f.reply(w, http.StatusOK, "describe-instances.xml", map[string]any{
		"RequestID": reqID, "Instances": match[start:end], "NextToken": next})
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

func (f *fakeEC2) terminateInstances(w http.ResponseWriter, form url.Values, reqID string) {
	var done []fakeInstance
	for i := 1; ; i++ {
		id := form.Get("InstanceId." + strconv.Itoa(i))
		if id == "" {
			break
		}
		var found *fakeInstance
		for _, in := range f.instances {
			if in.ID == id {
				found = in
			}
		}
		if found == nil || found.State == "terminated" {
			f.reply(w, http.StatusBadRequest, "error.xml", map[string]string{
				"Code": "InvalidInstanceID.NotFound", "Message": "The instance ID '" + xmlEscape(id) + "' does not exist", "RequestID": reqID})
			return
		}
		done = append(done, *found)
		found.State = "shutting-down"
	}
	f.reply(w, http.StatusOK, "terminate-instances.xml", map[string]any{"RequestID": reqID, "Instances": done})
}
