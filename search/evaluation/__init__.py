"""Offline tools: faithfulness of the maps and of the correspondence on labelled pairs, and the
`whysim explain` / `whysim evaluate-explanations` commands."""
