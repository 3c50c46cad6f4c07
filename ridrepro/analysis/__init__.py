"""Reading committed runs: tables, claims and their verdicts. Nothing here trains."""
