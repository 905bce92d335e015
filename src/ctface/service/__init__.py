"""The HTTP service (``ctface serve``): the library API over HTTP for scripts and PACS
integrations, and a review page for people. A thin layer over ``ctface.api``: heavy work (reading
and acquiring a scan, rendering a review image) runs in a bounded pool of worker processes that
keep the model loaded (``pool``); decisions and searches run in the server process against the
gallery file.

Modules: ``settings`` (what ``ctface serve`` is told), ``auth`` (bearer tokens, review sessions),
``uploads`` (request files into a private folder, zip archives checked), ``pool`` (the worker
processes and their queue), ``metrics`` (Prometheus), ``errors`` (JSON errors and their HTTP
statuses), ``app`` (the ``/v1`` API), ``review_page`` (``/review``).
"""
