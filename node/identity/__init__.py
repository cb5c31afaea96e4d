"""Citizens' verified identity (docs/identity.md): the node as an OpenID Connect relying party
of the province's unified identity service (统一身份认证), and a development provider for the
demo."""
