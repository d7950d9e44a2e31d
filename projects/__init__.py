"""Project packages (importable as projects.<P>.<p>)."""
