"""Config modules: plain Python files building sl config objects; they import each other as
this package (`from cfgs.preference_numbers import cfgs`)."""
