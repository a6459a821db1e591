def rule(user, context, api):
    if user.app_metadata.get("suspended"):
        raise UnauthorizedError("This account is suspended")
    return user, context
