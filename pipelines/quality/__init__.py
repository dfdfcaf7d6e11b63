"""Data quality: expectation suites (Great Expectations 1.x JSON) with actions, row rules, batch rules, results."""
