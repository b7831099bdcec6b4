"""Sign-in through the company directory: LDAP or Active Directory (ldap), OpenID Connect (oidc).
Each reads the user's groups; ports.directory.follow_groups makes them teams and roles."""
