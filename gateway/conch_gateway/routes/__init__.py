"""HTTP routes: thin — parse, reach the service with `services(request)`, return. One module per API."""
