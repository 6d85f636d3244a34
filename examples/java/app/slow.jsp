<%@ page contentType="text/plain; charset=UTF-8" %><%
    // A slow request, to watch Drain wait for the work in flight:
    // /slow.jsp?ms=5000 answers after five seconds (at most thirty).
    long ms = 1000;
    String p = request.getParameter("ms");
    if (p != null) {
        try {
            ms = Math.max(0L, Math.min(Long.parseLong(p), 30000L));
        } catch (NumberFormatException e) {
            response.sendError(400, "ms: want a number of milliseconds");
            return;
        }
    }
    Thread.sleep(ms);
%>slow done
