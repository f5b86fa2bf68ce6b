"""Reports: the equivalence matrix as JSON, Markdown, HTML and plots.

``results`` owns the JSON schema (build, validate, merge); ``matrix`` runs the
checks; ``render`` writes Markdown and HTML; ``plots`` draws the PNGs;
``write`` puts a whole report folder in place atomically.
"""
