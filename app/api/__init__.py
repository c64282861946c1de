"""The service API: the review, budget and feedback machinery for CI jobs and other callers.

The same process that serves the GitHub App serves ``/v1/ai/...`` when ``API_TOKEN`` or an
OIDC issuer and audience are configured (README, "Service API"). Nothing here is imported by
the App unless the API is on, and this ``__init__`` imports nothing, so the client
(``app.client``) can use :mod:`app.api.models` without the server's dependencies.

Module map, one job each:

- :mod:`.config`: the API's settings checked at start (the server refuses to start on a problem);
- :mod:`.models`: pydantic request and response models (the wire contract, also the client's);
- :mod:`.oidc`: GitHub Actions OIDC tokens verified against the configured issuer's JWKS;
- :mod:`.auth`: who is calling (static token or OIDC) and which repositories they may name;
- :mod:`.ratelimit`: a sliding window per caller;
- :mod:`.audit`: one structured event per request;
- :mod:`.repos`: a repository's installation, default branch and configuration, as the App reads them;
- :mod:`.analyze`, :mod:`.review`: the model calls, on the pipeline's and the ledger's functions;
- :mod:`.jobs`, :mod:`.checkout`, :mod:`.runner`: coding-agent jobs (rows, the checkout and its
  diff, the runner with its cap);
- :mod:`.routes`: the aiohttp views and their table; :mod:`.openapi`: the document built from it;
- :mod:`.state`: what the views share, built once per app;
- :mod:`.mount`: what ``app.server.create_app`` calls to add all of this to the app.
"""
