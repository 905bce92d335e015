"""De-identification: deface a CT (``deface``), and audit how re-identifiable a shared,
de-identified dataset still is (``audit``), by ctface's recognizer and by independent attacks."""
