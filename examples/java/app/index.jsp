<%@ page contentType="text/plain; charset=UTF-8" import="java.util.concurrent.atomic.AtomicLong" %><%
    // Visits to this server since it started, kept in the application scope.
    AtomicLong visits;
    synchronized (application) {
        visits = (AtomicLong) application.getAttribute("visits");
        if (visits == null) {
            visits = new AtomicLong();
            application.setAttribute("visits", visits);
        }
    }
%>hello from the roster java example
server: <%= System.getProperty("roster.server", "unknown") %>
context: <%= request.getContextPath() %>
visits: <%= visits.incrementAndGet() %>
forwarded-host: <%= request.getHeader("X-Forwarded-Host") %>
