"""The Streamlit workbench app and the `aselect` command-line interface."""
