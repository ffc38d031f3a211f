# Answers a RequestResponse invoke with what it was sent.
def handler(event, context):
    return {'answer': event, 'fn': context.function_name}
