# A Python rule in Auth0's deploy-cli layout: deploy-cli only reads the file, so the `.js` name does no harm.
def rule(user, context, api):
    context.id_token["https://example.com/plan"] = user.app_metadata.get("plan", "free")
    context.id_token["https://example.com/alerts"] = api.configuration.get("ALERTS_URL", "")
    return user, context
