"""The HTTP service (`custody serve`): tus uploads, the API, request signatures."""
