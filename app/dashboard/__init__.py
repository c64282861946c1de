"""The operator's page: spend, decisions, outcomes and calibration at a glance (``/dashboard``).

Read-only, behind a login: GitHub OAuth through the App's client id and secret (a viewer sees
only the repositories their own token can read, checked again every few minutes), or the
operator token (sees all). Nothing here writes to the bot's tables.

Module map, one job each:

- :mod:`.session`: the encrypted, signed session and login cookies;
- :mod:`.oauth`: GitHub's OAuth web flow and the repositories a user's token can read;
- :mod:`.access`: who is asking (session cookie or bearer token) and what they may see;
- :mod:`.filters`: the repository and date filters of a request, validated;
- :mod:`.figures`: every figure, read through the stores' own query functions;
- :mod:`.render`: the server-rendered HTML;
- :mod:`.views`: the aiohttp views; :mod:`.mount`: what ``app.server.create_app`` calls.

The charts are drawn by Chart.js (``static/chart.umd.min.js``, MIT, see
``static/chart.js-LICENSE.md``), served from the package: no CDN, no build step.
"""
