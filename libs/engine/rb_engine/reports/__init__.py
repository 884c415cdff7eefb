"""Reports of an `rb test` run: JUnit XML for CI (`junit`), one self-contained HTML page (`html`)."""
