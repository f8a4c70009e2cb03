"""The Grantflow console: every user group's daily work in a browser.

Server-rendered pages (Starlette, Jinja2, htmx for partial updates) over the three gRPC
services, called with the signed-in user's own token. It owns no business data and no database:
what a page shows is what the services let that user see. Simplified Chinese first, English on
request.
"""
