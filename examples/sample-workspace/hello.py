print("hello from the aibox sample workspace")
